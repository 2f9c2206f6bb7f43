"""Rank program: the real training run, handed a transport of the test's own.

    handed_transport.py OUT -- CLI ARGS

The transport keeps exchange.protocol.Transport's contract by passing every call on to
MpiTransport, and counts what it is handed: exchanges (a prepared one each time it runs),
bytes sent. Each rank writes its counts to OUT.<rank> as JSON; the test compares them with
the run's own records.
"""

import json
import sys

from allreduce_train import __main__ as cli
from allreduce_train.comm import MpiTransport, World, install_abort_hook
from allreduce_train.run import lifecycle


class Counting:
    def __init__(self, transport):
        self.transport, self.exchanges, self.bytes_sent, self.native = transport, 0, 0, 0

    def exchange(self, sends, recvs, tag=0):
        self.exchanges += 1
        self.bytes_sent += sum(view.nbytes for _, view in sends)
        self.transport.exchange(sends, recvs, tag)

    def prepare(self, sends, recvs, tag=0):  # the executor's path: counted per call
        run, nbytes = self.transport.prepare(sends, recvs, tag), sum(v.nbytes for _, v in sends)

        def counted():
            self.exchanges += 1
            self.bytes_sent += nbytes
            run()

        return counted

    def native_allreduce(self, buf):
        self.native += 1
        self.transport.native_allreduce(buf)


out, args = sys.argv[1], sys.argv[sys.argv.index("--") + 1 :]
install_abort_hook()
world = World.create()
cfg, dataset, backend, run_dir, state = cli.setup(world, args)
transport = Counting(MpiTransport(world))
lifecycle.run(
    cfg,
    world,
    cli.role(cfg, world, backend, dataset, state, transport),
    run_dir,
    cli.resumed(state),
)
with open(f"{out}.{world.rank}", "w") as f:
    json.dump(
        {
            "exchanges": transport.exchanges,
            "bytes_sent": transport.bytes_sent,
            "native": transport.native,
        },
        f,
    )
