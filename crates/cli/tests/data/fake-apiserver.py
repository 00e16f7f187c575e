"""A small fake Kubernetes API server for `veg controller --source kube` end to end.

Objects live by path with resourceVersions; GET reads an object or lists a collection (all
namespaces when the path names none; metadata-only when the client asks for
PartialObjectMetadata; `labelSelector=k=v`); a watch returns the collection's changes after the
given resourceVersion as JSON lines (waiting up to a second for one); POST creates (409 when it
exists), PUT replaces (409 on a stale resourceVersion), PATCH merges (merge and apply patches;
an apply creates). An object with a deletionTimestamp whose finalizers become empty is deleted.
Every request is appended to the log file as a JSON line. `POST /control/delete?path=P` sets a
deletionTimestamp, as `kubectl delete` does for an object with finalizers.

usage: fake-apiserver.py OBJECTS.json LOG.jsonl   (prints "ready PORT")
"""
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, unquote

objects = {}          # path -> object
deleted = {}          # path -> (object, rv): tombstones for watches
version = [1]
lock = threading.Condition()
log = open(sys.argv[2], "a")


def split(path):
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"]:
        prefix, rest = "/api/v1", parts[2:]
    elif parts and parts[0] == "apis" and len(parts) >= 3:
        prefix, rest = "/" + "/".join(parts[:3]), parts[3:]
    else:
        return None
    ns = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        ns, rest = rest[1], rest[2:]
    if not rest:
        return None
    return prefix, ns, rest[0], (rest[1] if len(rest) > 1 else None)


def in_collection(path, collection):
    p, c = split(path), split(collection)
    return p and c and p[0] == c[0] and p[2] == c[2] and p[3] and (c[1] is None or p[1] == c[1])


def merge(target, patch):
    if not isinstance(target, dict) or not isinstance(patch, dict):
        return patch
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = merge(target.get(key), value)
    return target


def bump(obj):
    version[0] += 1
    obj.setdefault("metadata", {})["resourceVersion"] = str(version[0])


def selected(obj, query):
    for pair in query.split("&"):
        if pair.startswith("labelSelector="):
            key, _, value = unquote(pair[len("labelSelector="):]).partition("=")
            if (obj.get("metadata", {}).get("labels") or {}).get(key) != value:
                return False
    return True


def meta_only(obj):
    return {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj["metadata"]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body, lines=False):
        data = body if lines else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def status(self, code, reason):
        self.reply(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "message": reason, "reason": reason, "code": code})

    def handle_any(self, method):
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        log.write(json.dumps({"method": method, "path": url.path, "query": url.query, "body": body}) + "\n")
        log.flush()
        meta = "PartialObjectMetadata" in (self.headers.get("accept") or "")
        path = url.path
        if path == "/control/delete":
            target = unquote(url.query.partition("path=")[2])
            with lock:
                obj = objects.get(target)
                if obj is None:
                    return self.status(404, "NotFound")
                obj["metadata"]["deletionTimestamp"] = "2026-11-27T00:00:00Z"
                bump(obj)
                lock.notify_all()
            return self.reply(200, obj)
        base = path[: -len("/status")] if path.endswith("/status") else path
        parts = split(base)
        if parts is None:
            return self.status(404, "NotFound")
        collection = parts[3] is None
        with lock:
            if method == "GET" and collection and "watch=true" in url.query:
                since = int(([p.split("=")[1] for p in url.query.split("&") if p.startswith("resourceVersion=")] or ["0"])[0] or 0)
                deadline = time.time() + 1.0
                while True:
                    changed = [("MODIFIED", o) for p, o in objects.items()
                               if in_collection(p, base) and int(o["metadata"]["resourceVersion"]) > since and selected(o, url.query)]
                    changed += [("DELETED", o) for p, (o, rv) in deleted.items()
                                if in_collection(p, base) and rv > since]
                    if changed or time.time() >= deadline:
                        break
                    lock.wait(max(0.0, deadline - time.time()))
                lines = b"".join(json.dumps({"type": kind, "object": meta_only(o) if meta else o}).encode() + b"\n"
                                 for kind, o in changed)
                return self.reply(200, lines, lines=True)
            if method == "GET" and collection:
                items = [meta_only(o) if meta else o for p, o in sorted(objects.items())
                         if in_collection(p, base) and selected(o, url.query)]
                kind = "PartialObjectMetadataList" if meta else "List"
                return self.reply(200, {"apiVersion": "meta.k8s.io/v1" if meta else "v1", "kind": kind,
                                        "metadata": {"resourceVersion": str(version[0])}, "items": items})
            if method == "GET":
                obj = objects.get(base)
                return self.reply(200, obj) if obj else self.status(404, "NotFound")
            if method == "POST":
                name = (body.get("metadata") or {}).get("name") or "generated-%d" % (version[0] + 1)
                target = base + "/" + name
                if target in objects:
                    return self.status(409, "AlreadyExists")
                body.setdefault("metadata", {})["name"] = name
                bump(body)
                objects[target] = body
                lock.notify_all()
                return self.reply(201, body)
            current = objects.get(base)
            wanted = ((body or {}).get("metadata") or {}).get("resourceVersion")
            if wanted and (current is None or wanted != current["metadata"]["resourceVersion"]):
                return self.status(409, "Conflict")
            if method == "PUT":
                if current is None:
                    return self.status(404, "NotFound")
                obj = body
            elif current is not None:
                obj = merge(current, body)
            elif "fieldManager" in url.query:
                obj = body
            else:
                return self.status(404, "NotFound")
            bump(obj)
            meta_ = obj["metadata"]
            if meta_.get("deletionTimestamp") and not meta_.get("finalizers"):
                objects.pop(base, None)
                deleted[base] = (obj, version[0])
            else:
                objects[base] = obj
            lock.notify_all()
            return self.reply(200, obj)

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_PATCH(self):
        self.handle_any("PATCH")


for path, obj in json.load(open(sys.argv[1])).items():
    bump(obj)
    objects[path] = obj
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print("ready", server.server_address[1], flush=True)
server.serve_forever()
