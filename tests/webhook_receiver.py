"""A webhook receiver for the tests: a real HTTP server on 127.0.0.1 that answers as a test tells it."""

import threading

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class Receiver:
    """Records every request (headers, body) and answers with `answers` in turn (then 200): a status code, a
    Response, or a function of the request returning one."""

    def __init__(self, answers=()):
        self.answers = list(answers)
        self.requests = []
        self.lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()

    @Request.application
    def _app(self, request):
        with self.lock:
            self.requests.append((dict(request.headers), request.get_data()))
            answer = self.answers.pop(0) if self.answers else 200
        if callable(answer) and not isinstance(answer, Response):
            answer = answer(request)
        return answer if isinstance(answer, Response) else Response("ok" if answer < 300 else "no", status=answer)
