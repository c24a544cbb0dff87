# Calculate sum of squares
result = sum(i**2 for i in range(1_000_000))
print(f"Result: {result}")
