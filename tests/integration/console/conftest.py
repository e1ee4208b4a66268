"""channels.testing imports daphne (for its live-server test case, which we do not use) at
import time; daphne and Twisted are not among our requirements (uvicorn serves the sockets).
A stand-in module lets `channels.testing.WebsocketCommunicator` import without them."""

import importlib.util
import sys
import types

if importlib.util.find_spec("daphne") is None:
    stand_in = types.ModuleType("daphne.testing")
    stand_in.DaphneProcess = object  # type: ignore[attr-defined]
    sys.modules.setdefault("daphne", types.ModuleType("daphne"))
    sys.modules.setdefault("daphne.testing", stand_in)
