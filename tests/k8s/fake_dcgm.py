"""A stand-in for NVIDIA's DCGM exporter: GET /metrics answers what the test set, in the
exporter's text format (the label order of dcgm-exporter's renderer, internal/pkg/rendermetrics:
gpu, UUID, pci_bus_id, device, modelName, Hostname, its extra labels, then the pod mapping's
container, namespace and pod), over HTTP on 127.0.0.1.

Not covered: DCGM itself (the readings are what the test sets), one exporter per node (this one
answers for every node), MIG instances and the profiling metrics (tests/unit/extensions/usage/test_usage_cluster.py
parses those from a literal exposition).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FIELDS = (("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", "utilization"),
          ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", "memory_mb"))


@dataclass
class Device:
    uuid: str
    index: int
    node: str
    utilization: int
    memory_mb: int
    namespace: str = ""  # the pod it is allocated to ("": none)
    pod: str = ""
    container: str = ""


def exposition(devices: list[Device]) -> str:
    lines = []
    for field, help_text, attribute in FIELDS:
        lines += [f"# HELP {field} {help_text}", f"# TYPE {field} gauge"]
        for d in devices:
            labels = (f'gpu="{d.index}",UUID="{d.uuid}",pci_bus_id="00000000:{7 + d.index:02X}:00.0",'
                      f'device="nvidia{d.index}",modelName="NVIDIA A100-SXM4-80GB",Hostname="{d.node}",'
                      f'DCGM_FI_DRIVER_VERSION="570.86.15"')
            if d.pod:
                labels += f',container="{d.container}",namespace="{d.namespace}",pod="{d.pod}"'
            lines.append(f"{field}{{{labels}}} {getattr(d, attribute)}")
    return "\n".join(lines) + "\n"


class FakeDcgmExporter:
    def __init__(self):
        self.devices: list[Device] = []
        self.scrapes = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = exposition(list(exporter.devices)).encode()
                exporter.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/metrics"

    def __enter__(self) -> "FakeDcgmExporter":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
