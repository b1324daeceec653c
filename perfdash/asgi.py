from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "perfdash.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from perfdash.dashboard.routing import websocket_urlpatterns  # noqa: E402
from perfdash.lib.websocket import SameOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# What is loaded by now (Django, the views and their imports: numpy, pandas, statsmodels) lives as
# long as the process. Frozen, it is left out of the cyclic collector's full passes, which
# otherwise walk all of it every few seconds, pausing every socket and live update. The URLconf
# is imported first so its modules are frozen too.
get_resolver().url_patterns  # noqa: B018
gc.collect()  # garbage left from start-up would otherwise be frozen with the rest
gc.freeze()
