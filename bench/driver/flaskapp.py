"""The benchmark's Flask app: one small JSON route, as an everyday API
endpoint would answer (bench/driver writes this file next to its configs
and runs it under Debian's gunicorn with 2 sync workers)."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/")
@app.route("/api/item")
def item():
    return jsonify(id=42, name="widget", tags=["a", "b"], path=request.path)
