"""The ceiling: a bare Flask app whose POST route returns a fixed small XML body, served like the service."""

from flask import Flask

XML = '<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n  <Say>Hello</Say>\n</Response>'

app = Flask(__name__)


@app.post("/voice/instruct")
@app.post("/voice/events")
def fixed():
    """Always the same answer, whatever is posted."""
    return app.response_class(XML, mimetype="text/plain")
