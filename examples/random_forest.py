# /// script
# dependencies = ["numpy", "scikit-learn"]
# ///
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.datasets import make_classification

# Generate data
X, y = make_classification(n_samples=10000, n_features=20)

# Train model
clf = RandomForestClassifier(n_estimators=100)
clf.fit(X, y)

print(f"Accuracy: {clf.score(X, y):.4f}")
