"""Stand-ins for remote GPU hosts on this machine: a real OpenSSH server with its own keys
and home (sshd.py), optionally in a network namespace with its own address that can be cut
off (netns.py), and an inventory naming them. tests/ and bench/ both use them; not part of
the installed packages."""
