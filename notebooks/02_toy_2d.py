# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Stub $x^2$

# %% tags=["parameters"]
seed = 0

# %%
import matplotlib.pyplot as plt
plt.plot([1, 2], [3, 4]); plt.xlabel("x")
