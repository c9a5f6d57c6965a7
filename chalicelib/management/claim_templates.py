"""The claim-template grammar of a connection's attribute map, as the Management API checks it.

``options.attribute_map.attributes`` maps a profile attribute to a template: text with
``${context.tokenset.<claim>}``, ``${context.userinfo.<claim>}`` or
``${context.connection.id|name|strategy}`` expressions. The grammar itself (which claims are never
targets, what an expression may read) lives with the read side, ``registry/connections``, because
claim mapping at login reads templates by the same rules without loading this package.
"""
from __future__ import annotations

import re

from chalicelib.management.validation import payload_error
from chalicelib.registry.connections import REGISTERED_CLAIMS, TEMPLATE_EXPR, TEMPLATE_PART


def check_attribute_templates(attributes: dict[str, str] | None) -> None:
    """Raise InvalidBody naming the first attribute whose name or template breaks the grammar."""
    for target, template in (attributes or {}).items():
        where = f"options.attribute_map.attributes.{target}"
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", target):
            raise payload_error("attribute names are letters, digits and _", where)
        if target in REGISTERED_CLAIMS:
            raise payload_error(f"{target} is a registered claim and cannot be mapped", where)
        if len(template) > 1024:
            raise payload_error("template is too long", where)
        for expression in TEMPLATE_PART.findall(template):
            if not TEMPLATE_EXPR.match(expression.strip()):
                raise payload_error(f"unknown template expression ${{{expression}}}", where)
        if "${" in TEMPLATE_PART.sub("", template):
            raise payload_error("template has an unclosed ${ expression", where)
