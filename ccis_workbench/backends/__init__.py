"""Backends the core never imports: libvirt builds (and, later, console sessions)."""
