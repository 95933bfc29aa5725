"""Fault injection from outside the process: a killed workbench, stale files; real libvirtd and qemu (TCG)."""
