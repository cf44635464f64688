"""A stand-in for `torchrun` and torch.distributed's all-reduce, for tests without torch (too heavy here).

As a launcher (`python torchrun_standin.py [--nproc-per-node N] [--master-port P] SCRIPT ARGS...`)
it does what torchrun does for one node: N workers of SCRIPT with RANK, LOCAL_RANK, WORLD_SIZE,
LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT, N defaulting to PET_NPROC_PER_NODE as torchrun's
does, and its exit status the first failing worker's. `all_reduce_sum(value)` is the collective a
worker calls: rank 0 gathers over TCP at MASTER_ADDR:MASTER_PORT and sends the sum back.
Not covered: elastic rendezvous, restarts, NCCL or gloo themselves.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time


def all_reduce_sum(value: int) -> int:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    address = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
    if rank == 0:
        with socket.create_server(address) as server:
            peers = [server.accept()[0] for _ in range(world - 1)]
            total = value + sum(int(peer.recv(64).decode()) for peer in peers)
            for peer in peers:
                peer.sendall(str(total).encode())
                peer.close()
            return total
    for _ in range(200):  # rank 0 may not listen yet
        try:
            with socket.create_connection(address) as connection:
                connection.sendall(str(value).encode())
                return int(connection.recv(64).decode())
        except ConnectionRefusedError:
            time.sleep(0.05)
    raise RuntimeError("rank 0 never listened")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nproc-per-node", type=int, default=int(os.environ.get("PET_NPROC_PER_NODE", "1")))
    parser.add_argument("--master-addr", default=os.environ.get("PET_MASTER_ADDR", "127.0.0.1"))
    parser.add_argument("--master-port", default=os.environ.get("PET_MASTER_PORT", "29500"))
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    n = options.nproc_per_node
    workers = [subprocess.Popen([sys.executable, options.script, *options.args], env={
        **os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(n), "LOCAL_WORLD_SIZE": str(n),
        "MASTER_ADDR": options.master_addr, "MASTER_PORT": str(options.master_port)}) for rank in range(n)]
    codes = [worker.wait() for worker in workers]
    return next((code for code in codes if code), 0)


if __name__ == "__main__":
    sys.exit(main())
