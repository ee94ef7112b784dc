from .demo import (CLASSES, PALETTE, DemoShapesDataset, demo_shapes_ready,
                   make_demo_shapes)

__all__ = ['DemoShapesDataset', 'make_demo_shapes', 'demo_shapes_ready',
           'CLASSES', 'PALETTE']
