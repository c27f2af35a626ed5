from tests.dovecot import Account


def test_a_fresh_account_has_an_empty_inbox_and_special_folders(account: Account) -> None:
    client = account.client()
    try:
        names = {name for _flags, _delim, name in client.list_folders()}
        assert {"INBOX", "Drafts", "Sent"} <= names
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    finally:
        client.logout()
