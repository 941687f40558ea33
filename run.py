"""``app = create_app()`` for `flask --app run`, gunicorn (``run:app``) and ``python run.py`` in development."""

import os

from app import create_app

app = create_app()

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")), debug=False)
