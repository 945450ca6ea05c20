"""Guardrails: signed policies of security and scaling rules, named by a token, evaluated before
every production cutover. There is no rule that can be switched off and no flag that skips one."""
