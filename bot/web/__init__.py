"""The HTTP side of Teller: web chat page, REST API, and the webhooks of the chat platforms."""
