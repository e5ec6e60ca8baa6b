"""The X/Y/Z plot (AUTOMATIC1111's scripts/xyz_grid.py): axes, cells, the grid, the tab's controls."""
