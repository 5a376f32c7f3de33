"""moto's server, answering one request at a time.

`moto_server` serves requests on many threads, and its DynamoDB transactions roll back by
restoring a snapshot of every table, which loses or resurrects writes made by other threads in
the meantime. Real DynamoDB applies a transaction atomically; serving requests one by one gives
the tests that same guarantee, so they measure our code and not the emulator's races.
"""

import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, app, threaded=False, use_reloader=False)


if __name__ == "__main__":
    main()
