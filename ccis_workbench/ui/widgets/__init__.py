"""Small widgets of the workbench UI."""
