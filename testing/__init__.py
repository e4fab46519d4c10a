"""Test doubles on loopback for the tests and the bench: a fake model server and fake chat APIs."""
