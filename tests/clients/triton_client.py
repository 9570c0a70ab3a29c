"""Triton's own HTTP client (tritonclient[http], in its own venv: its pins clash with
TensorFlow's) against one Hubforge endpoint. Prints what it saw as JSON.

    .venvs/triton/bin/python tests/clients/triton_client.py HOST:PORT MODEL EXAMPLE_B64 [H=V...]
"""

import base64
import json
import sys

import numpy as np
import tritonclient.http as http
from tritonclient.utils import InferenceServerException

url, model, example = sys.argv[1], sys.argv[2], base64.b64decode(sys.argv[3])
given = dict(h.split("=", 1) for h in sys.argv[4:])


def headers() -> dict:
    return dict(given)  # the client adds its own headers to the dict it is given


client = http.InferenceServerClient(url)  # HOST:PORT[/base/path], as Triton's clients take it
seen = {
    "live": client.is_server_live(headers=headers()),
    "ready": client.is_server_ready(headers=headers()),
    "model_ready": client.is_model_ready(model, headers=headers()),
    "metadata": client.get_model_metadata(model, headers=headers()),
}
x = np.array([[1.0], [2.0], [5.0]], dtype=np.float32)
for binary in (True, False):
    tensor = http.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    result = client.infer(
        model,
        [tensor],
        outputs=[http.InferRequestedOutput("y", binary_data=binary)],
        request_id="req-1",
        headers=headers(),
    )
    seen[f"y_binary_{binary}"] = result.as_numpy("y").tolist()
    seen[f"response_binary_{binary}"] = result.get_response()
seen["y_version"] = (
    client.infer(model, [tensor], model_version="123", headers=headers()).as_numpy("y").tolist()
)
# BYTES: serialized tf.Examples into the classify signature, binary both ways
examples = http.InferInput("inputs", [2], "BYTES")
examples.set_data_from_numpy(np.array([example, example], dtype=object), binary_data=True)
result = client.infer(
    model, [examples], headers=headers(), parameters={"signature_name": "classify_x_to_y"}
)
seen["scores"] = result.as_numpy("scores").tolist()
errors = {}
for case, call in {
    "unknown model": lambda: client.infer("nope", [tensor], headers=headers()),
    "wrong datatype": lambda: client.infer(
        model,
        [
            http.InferInput("x", [1, 1], "INT64").set_data_from_numpy(
                np.array([[1]], dtype=np.int64), binary_data=False
            )
        ],
        headers=headers(),
    ),
}.items():
    try:
        call()
        errors[case] = None
    except InferenceServerException as e:
        errors[case] = [e.status(), e.message()]
seen["errors"] = errors
print(json.dumps(seen))
