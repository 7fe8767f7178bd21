"""Security primitives: each secret has one owner module here."""
