"""Input: campaign files, recipient lists, phone numbers, administrative units and the message text, validated and normalised (NFC, E.164)."""
