"""Secrets at rest: encrypted with the server key, and compared without keeping them."""

from cryptography.fernet import Fernet

from erpauth.security.secrets import SecretBox, new_client_secret


def test_a_secret_matches_itself_and_nothing_else_however_often_it_is_checked() -> None:
    box = SecretBox([Fernet.generate_key().decode()])
    secret = new_client_secret()
    stored = box.encrypt(secret)

    for _ in range(3):  # the first check decrypts; the later ones use what it remembered
        assert box.matches(stored, secret)
        assert not box.matches(stored, secret[:-1] + ("A" if secret[-1] != "A" else "B"))
        assert not box.matches(stored, "")
        assert not box.matches(stored, secret + " ")


def test_each_encryption_of_a_secret_matches_it_and_another_secret_never_does() -> None:
    box = SecretBox([Fernet.generate_key().decode()])
    old, new = new_client_secret(), new_client_secret()
    old_stored = box.encrypt(old)
    assert box.matches(old_stored, old)

    new_stored = box.encrypt(new)

    assert box.matches(new_stored, new)
    assert not box.matches(new_stored, old)
    assert box.matches(box.encrypt(old), old)


def test_the_check_for_an_unknown_client_matches_no_secret() -> None:
    box = SecretBox([Fernet.generate_key().decode()])
    secret = new_client_secret()

    for value in (secret, "", " ", "x" * 200, box.encrypt(secret)):
        assert not box.matches_none(value)
