"""fdrouter: a FastDeploy-compatible LLM inference router on aiohttp.

Embedding it in a running event loop (a notebook, a test, a model server)::

    async with fdrouter.RouterServer(fdrouter.RouterConfig(port=0)) as server:
        print(server.url)

Stable API: the names exported here, ``fdrouter.policies`` (the policy protocol,
``register_policy``, ``make_policy``), ``fdrouter.sim`` (``simulate`` and its results),
``fdrouter.testing`` (``MockBackend``, ``MockBehavior``, the port and process helpers) and the
``fdrouter`` command line. Every other module is internal: its ``__all__`` says what it offers
to the rest of the package, and it may change between releases.
"""

from .config import ConfigError, RouterConfig
from .errors import RouterError
from .instances import InstanceInfo, Role
from .registration import RegistrationError, keep_registered, register_instance, register_instance_sync
from .router import Router
from .server import RouterServer, build_app

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "InstanceInfo", "RegistrationError", "Role", "Router", "RouterConfig", "RouterError",
    "RouterServer", "build_app", "keep_registered", "register_instance", "register_instance_sync", "__version__",
]
