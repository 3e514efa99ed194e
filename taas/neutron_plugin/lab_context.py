"""Lab only: Neutron's noauth pipeline with the caller's identity taken from headers.

Debian's noauth pipeline gives every request that names a project an admin context without a
project (neutron.wsgi falls back to get_admin_context()), so "a member of another project" cannot
be played without Keystone. The Neutron lab replaces its `fake_project_id` filter with this one:
no X-Project-Id -> admin (as before); X-Project-Id [+ X-Roles, X-User-Id] -> that caller, admin
only with the admin role. It trusts every header: labs only, never a cloud.
"""

from __future__ import annotations

from typing import Any

import webob.dec
from neutron_lib import context
from oslo_middleware import base


class HeaderContext(base.ConfigurableMiddleware):
    @webob.dec.wsgify
    def __call__(self, req: Any) -> Any:
        ctx = context.Context.from_environ(req.environ)
        if not ctx.project_id:
            ctx.project_id = "fake_project_id"
            ctx = ctx.elevated()
        elif not ctx.user_id:
            ctx.user_id = "lab-user"
        req.environ["neutron.context"] = ctx
        return self.application
