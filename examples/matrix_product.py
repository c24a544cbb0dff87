# /// script
# dependencies = ["numpy"]
# ///
import numpy as np

# Heavy matrix multiplication
A = np.random.rand(1000, 1000)
B = np.random.rand(1000, 1000)
C = np.dot(A, B)

print(f"Result shape: {C.shape}")
print(f"Sum: {C.sum():.2f}")
