"""Sends requests to an export the way TF Serving does: the session-based loader, no Python
feed checks (C++ `Session::RunCallable`), so any shape or value reaches the graph.

As a script, in a process where tfvae and TFP cannot be imported:
  python request_probe.py EXPORT_DIR REQUESTS.npz REPORT.json
REQUESTS.npz holds arrays named `<label>|<signature>|<input>`; REPORT.json gets, per label,
`{"error": message or null, "outputs": {name: shape}, "then_ok": bool}` (`then_ok`: a good
request, the first row of `good|...`, still answers afterwards).
"""

import json
import sys


class SessionRunner:
    """An export loaded with `tf.compat.v1.saved_model.loader.load` into its own graph."""

    def __init__(self, export_dir):
        import tensorflow as tf

        self.tf = tf
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], export_dir)
        self.signatures = meta.signature_def
        self.callables = {}

    def run(self, signature, feeds):
        """Output name -> array; raises `tf.errors.OpError` as a server would report it."""
        from tensorflow.core.protobuf import config_pb2

        sig = self.signatures[signature]
        names = sorted(sig.outputs)
        key = (signature, tuple(sorted(feeds)))
        if key not in self.callables:
            options = config_pb2.CallableOptions()
            options.feed.extend(sig.inputs[k].name for k in sorted(feeds))
            options.fetch.extend(sig.outputs[k].name for k in names)
            self.callables[key] = self.session._make_callable_from_options(options)
        return dict(zip(names, self.callables[key](*[feeds[k] for k in sorted(feeds)])))

    def error(self, signature, feeds):
        """The error message a client gets for this request, or None if it is answered."""
        try:
            self.run(signature, feeds)
        except self.tf.errors.OpError as e:
            return e.message
        return None


def _by_label(arrays):
    requests = {}
    for key, value in arrays.items():
        label, signature, name = key.split("|")
        requests.setdefault(label, (signature, {}))[1][name] = value
    return requests


def main(export_dir, requests_path, report_path):
    import numpy as np

    requests = _by_label(dict(np.load(requests_path)))
    good = requests.pop("good")
    runner = SessionRunner(export_dir)
    report = {}
    for label, (signature, feeds) in requests.items():
        entry = {"error": None, "outputs": {}}
        try:
            entry["outputs"] = {k: list(v.shape) for k, v in runner.run(signature, feeds).items()}
        except runner.tf.errors.OpError as e:
            entry["error"] = e.message
        entry["then_ok"] = bool(runner.run(*good))
        report[label] = entry
    modules = sorted(m for m in sys.modules if m.split(".")[0] in Blocker.blocked)
    with open(report_path, "w") as f:
        json.dump({"requests": report, "modules": modules}, f, indent=1)


class Blocker:
    """Makes tfvae and tensorflow_probability unimportable in this process (a
    `sys.meta_path` finder; serving_probe.py installs it too)."""

    blocked = ("tfvae", "tensorflow_probability")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ImportError(f"{name} is blocked in this process (serving has no Python deps)")
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, Blocker())
    main(*sys.argv[1:])
