#!/usr/bin/env bash
# End to end, sending addresses over IPv6: test_source_postfix.sh's world in
# a network namespace of its own, the transports bound to 2001:db8::77 and
# 2001:db8::78 (smtp_bind_address6). See that script for what it asserts.
SRC_FAMILY=6 exec bash "$(dirname "$0")/test_source_postfix.sh"
