"""The paper's core, free of training machinery: quantile lattices, the assignment solvers,
the image costs (with their C kernel), and the generator backbones."""
