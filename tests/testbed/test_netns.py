import subprocess

import pytest

from testbed.netns import can_make_namespaces, namespaces, remove_stale, sh

pytestmark = pytest.mark.skipif(not can_make_namespaces(), reason="needs root and nft")


def test_a_killed_runs_namespaces_are_removed_before_new_ones():
    """A run killed before its cleanup leaves its namespaces, with a process inside, holding
    the range's addresses; the next run's namespaces() removes them first."""
    sh("ip", "netns", "add", "bs5-999-0")
    sh("ip", "link", "add", "bs5v999x0", "type", "veth", "peer", "name", "eth0", "netns",
       "bs5-999-0")
    sleeper = subprocess.Popen(["ip", "netns", "exec", "bs5-999-0", "sleep", "60"])
    try:
        with namespaces(1) as (ns,):
            listed = sh("ip", "netns", "list").stdout
            assert "bs5-999-0" not in listed and ns.name in listed
            assert "bs5v999x0" not in sh("ip", "link").stdout
            assert sleeper.wait(timeout=10) != 0  # killed with its namespace
        assert ns.name not in sh("ip", "netns", "list").stdout
    finally:
        sleeper.kill()
        remove_stale()
