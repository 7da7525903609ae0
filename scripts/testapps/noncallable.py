"""A fixture whose `app` is not callable."""

app = 42
