"""Every listener greets and answers NOOP/CAPA.
Usage: attack_alive.py WHAT"""
import sys

from attack_common import assert_alive

assert_alive(sys.argv[1] if len(sys.argv) > 1 else "start")
