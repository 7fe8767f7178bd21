"""EasyConnect: the white-label connection portal."""
