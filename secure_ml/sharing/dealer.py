"""The dealer: CrypTen's trusted third party, served from its own process.

CrypTen's ``TTPServer`` swallows any ``RuntimeError`` (a dead peer, a timeout)
and returns as if it had finished, so a failed run would look clean from the
dealer's side. We reuse its triple generators but run the request loop
ourselves, so that only an explicit "terminate" from party 0 ends it normally.

What the dealer learns: the shapes and kinds of the correlated randomness each
request asks for, never a share of any party's data. What it sends: party 0's
corrected share of each triple (the other parties derive theirs from seeds the
dealer shared with them at start-up). A ``bulk`` message (see
``secure_ml.sharing.precompute``) carries many requests; they are answered in
order, and all corrections go back to party 0 as one tensor.
"""

from __future__ import annotations

import logging

from secure_ml.compat import load_crypten
from secure_ml.sharing.csprng import setup_dealer_streams
from secure_ml.sharing.precompute import BULK, answer_bulk

log = logging.getLogger(__name__)
TERMINATE = "terminate"


def serve() -> int:
    """Answer triple requests from party 0 until told to stop; return the count."""
    crypten = load_crypten()
    comm = crypten.communicator.get()
    server_cls = crypten.mpc.provider.ttp_provider.TTPServer
    server = server_cls.__new__(server_cls)  # skip __init__: it runs its own loop
    server.ttp_group = comm.ttp_group
    server.comm_group = comm.ttp_comm_group
    server.device = "cpu"
    setup_dealer_streams(server)  # a 256-bit ChaCha20 key per party
    dealer_rank = comm.get_ttp_rank()
    served = 0
    while True:
        message = comm.recv_obj(0, server.ttp_group)
        if message == TERMINATE:
            log.info("dealer: party 0 ended the session after %d requests", served)
            return served
        if message["function"] == BULK:
            server.device = "cpu"
            comm.broadcast(answer_bulk(server, message), dealer_rank, server.comm_group)
            served += len(message["requests"])
            continue
        server.device = message["device"]
        result = getattr(server, message["function"])(*message["args"], **message["kwargs"])
        comm.send_obj(result.size(), 0, server.ttp_group)
        comm.broadcast(result, dealer_rank, server.comm_group)
        served += 1
