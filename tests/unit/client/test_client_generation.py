"""`make generate` covers a new service and new RPCs with no hand edit: the generator run on
the real protos plus a new one (every RPC kind) emits both clients, which compile."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

NEW_PROTO = """
syntax = "proto3";
package wework.v1;

// Probes the platform (a service added after the client was written).
service ProbeService {
  // Lists probes.
  rpc ListProbes(ListProbesRequest) returns (ListProbesResponse);
  // Creates a probe.
  rpc CreateProbe(CreateProbeRequest) returns (Probe);
  // Talks both ways.
  rpc ChatWithProbe(stream Probe) returns (stream Probe);
}

message Probe {
  string id = 1;
}
message ListProbesRequest {
  int32 page_size = 1;
  string page_token = 2;
}
message ListProbesResponse {
  repeated Probe probes = 1;
  string next_page_token = 2;
}
message CreateProbeRequest {
  Probe probe = 1;
  string request_id = 2;
}
"""


def test_a_new_service_gets_both_clients_and_a_row_in_the_docs(tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    # The whole tree: wework/v1 imports protos vendored beside it (google/rpc/status.proto).
    shutil.copytree(REPO / "protos", protos)
    (protos / "wework" / "v1" / "probe.proto").write_text(NEW_PROTO)
    descriptor_set = tmp_path / "set.binpb"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"--proto_path={protos}", "--include_imports",
                    "--include_source_info", f"--descriptor_set_out={descriptor_set}",
                    *map(str, sorted((protos / "wework" / "v1").glob("*.proto")))], check=True)
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(REPO / "scripts" / "generate_client.py"), str(descriptor_set), str(out)],
                   check=True)

    client = out / "clients" / "wework" / "client"
    asyncio_services = (client / "_async" / "services.py").read_text()
    blocking_services = (client / "_sync" / "services.py").read_text()
    for source in (asyncio_services, blocking_services, (client / "_sync" / "core.py").read_text()):
        compile(source, "generated", "exec")
    assert "class AsyncProbeServiceClient(AsyncServiceClient):" in asyncio_services
    assert "    async def list_probes(" in asyncio_services and "    def iter_probes(" in asyncio_services
    assert "-> AsyncPager[probe_pb2.ListProbesResponse, probe_pb2.Probe]:" in asyncio_services
    assert "    def chat_with_probe(\n        self,\n        requests: RequestStream[probe_pb2.Probe]," \
        in asyncio_services
    assert "class ProbeServiceClient(ServiceClient):" in blocking_services
    assert "    def create_probe(" in blocking_services and "async def" not in blocking_services
    assert "def probes(self) -> ProbeServiceClient:" in blocking_services
    assert '"""CreateProbe: Creates a probe. A Probe fills `probe`. `request_id` is filled' in blocking_services
    docs = (out / "docs" / "client.md").read_text()
    assert "| `ProbeService/CreateProbe` | `probes.create_probe` | `Probe` | yes |" in docs
    assert "| `ProbeService/ChatWithProbe` | `probes.chat_with_probe` | bidirectional stream | no |" in docs
