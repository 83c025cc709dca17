"""The safeguarding console: the review queue, the case, the packet to read down the phone and
the moves, as web pages served by the API process (`views.console`) for people who do not use
curl. Signed in with an API key exchanged for a server-side session (`sessions`)."""
