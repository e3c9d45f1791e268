# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The data sets: samples and sizes
#
# In this notebook we load every data set the three papers use that is available on this machine
# without a download, show training images from each, and tabulate their sizes: train/test
# counts, image shape, pixel range and the likelihood the models use for them.
#
# It is also the smallest end-to-end run of the pipeline: parameters cell → data → figure
# (`vaegen_datasets.png`/`.pdf`) → results JSON with sanity claims (canonical set sizes, pixel
# values on the k/255 grid). Runtime: a few seconds once the data are cached (every profile loads
# the full sets and shows the same images).

# %% tags=["parameters"]
from vaegen_utils.profiles import current_profile

PROFILE = current_profile()  # smoke | cpu | paper: env VAEGEN_PROFILE (default cpu) or papermill -p PROFILE
SEED = 0  # chooses which training images appear in the figure
DATASETS = ["binary_mnist", "mnist", "fashion_mnist", "cifar10"]  # every set the papers use; missing ones are reported, never downloaded
IMAGES_SHOWN = 32  # training images per data set in the figure
GRID_COLUMNS = 16  # images per grid row

# %% [markdown]
# ## Setup

# %%
import matplotlib.pyplot as plt
import torch

from vaegen_utils import data, notebook
from vaegen_utils.figures import sample_grid
from vaegen_utils.results import Claim
from vaegen_utils.seeding import make_generator

run = notebook.start("vaegen_datasets", PROFILE, seed=SEED)

# The canonical split sizes (the data sets' own documentation), used as sanity claims below.
CANONICAL_SIZES = {
    "binary_mnist": (60_000, 10_000),  # MNIST binarized: same images as MNIST
    "mnist": (60_000, 10_000),  # LeCun et al. 1998
    "fashion_mnist": (60_000, 10_000),  # Xiao et al. 2017
    "cifar10": (50_000, 10_000),  # Krizhevsky 2009
}

unknown = sorted(set(DATASETS) - set(data.DATASETS))
assert not unknown, f"unknown data sets {unknown}; choose from {data.DATASETS}"
# Availability without network (never downloads): cache, data/ files or an installed package.
sources = {row["name"]: row["source"] for row in data.dataset_summary()}
available = data.available_datasets()
loaded_names = [name for name in DATASETS if available[name]]
missing_names = [name for name in DATASETS if not available[name]]
assert loaded_names, f"none of {DATASETS} is available offline: {sources}"

# %% [markdown]
# ## Load and measure

# %%
rows = {}  # name -> sizes and ranges, for the table and the results JSON
shown = {}  # name -> the training images drawn in the figure
for name in loaded_names:
    train = data.load_dataset(name, "train")
    test = data.load_dataset(name, "test")
    images = train.images
    # Values should be k/255 (greyscale) or 0/1 (binary): check the grid exactly, then count the
    # levels k in use (a bincount over 47M values is ~10x faster than torch.unique's sort).
    levels = torch.round(images * 255)
    on_grid = bool(torch.equal(levels / 255, images))
    levels_used = torch.bincount(levels.clamp(0, 255).to(torch.int64).flatten(), minlength=256)
    rows[name] = {
        "train": len(train.images),
        "test": len(test.images),
        "shape": list(train.data_shape),
        "min": float(images.min()),
        "max": float(images.max()),
        "distinct_values": int((levels_used > 0).sum()),
        "on_k_over_255_grid": on_grid,
        "likelihood": train.likelihood_hint,
    }
    generator = make_generator(SEED)
    indices = torch.randperm(len(images), generator=generator)[:IMAGES_SHOWN]
    shown[name] = images[indices]

header = f"{'data set':<14} {'train':>7} {'test':>6}  {'shape':<8} {'range':<7} {'values':>6}  {'likelihood':<12} source"
print(header)
print("-" * len(header))
for name, row in rows.items():
    shape = "x".join(str(size) for size in row["shape"])
    value_range = f"[{row['min']:.0f}, {row['max']:.0f}]"
    print(
        f"{name:<14} {row['train']:>7} {row['test']:>6}  {shape:<8} {value_range:<7} "
        f"{row['distinct_values']:>6}  {row['likelihood']:<12} {sources[name]}"
    )
for name in missing_names:
    print(f"{name}: not available offline ({sources[name]}); load_dataset({name!r}) with network access fetches and caches it once")

# %% [markdown]
# ## Figure: training images of every available data set

# %%
columns = min(GRID_COLUMNS, IMAGES_SHOWN)
grid_rows = -(-IMAGES_SHOWN // columns)  # ceil
width = 6.5  # inches: a page width
fig, axes = plt.subplots(
    len(shown), 1, figsize=(width, len(shown) * (width * grid_rows / columns + 0.35)), squeeze=False
)
for ax, (name, images) in zip(axes[:, 0], shown.items()):
    grid = sample_grid(images, columns)
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1)
    row = rows[name]
    shape = "×".join(str(size) for size in row["shape"])
    ax.set_title(
        f"{name}: {row['train']:,} train / {row['test']:,} test, {shape}, "
        f"{row['distinct_values']} values, {row['likelihood']}",
        loc="left",
    )
    ax.set_axis_off()
run.savefig(fig)
plt.show()

# %% [markdown]
# ## Results and sanity claims

# %%
claims = []
for name, row in rows.items():
    expected = list(CANONICAL_SIZES[name])
    measured = [row["train"], row["test"]]
    claims.append(
        Claim(
            id=f"{name}_split_sizes",
            paper="vaegen",
            figure="data sets table",
            statement=f"{name} has {expected[0]} training and {expected[1]} test images",
            reported=expected,
            measured=measured,
            tolerance=0,
            holds=measured == expected,
        )
    )
    max_values = 2 if row["likelihood"] == "bernoulli" else 256  # binary: {0, 1}; else k/255
    claims.append(
        Claim(
            id=f"{name}_pixel_values",
            paper="vaegen",
            figure="data sets table",
            statement=f"{name} pixel values lie in [0, 1] on the k/255 grid, at most {max_values} distinct",
            reported=max_values,
            measured=row["distinct_values"],
            tolerance="at most",
            holds=row["on_k_over_255_grid"] and 0 <= row["min"] and row["max"] <= 1 and row["distinct_values"] <= max_values,
        )
    )

run.finish(
    config={"datasets": DATASETS, "images_shown": IMAGES_SHOWN, "grid_columns": GRID_COLUMNS, "profile": PROFILE},
    metrics={"datasets": rows, "missing": missing_names},
    claims=claims,
)
# The pipeline proof fails loudly: a data set with the wrong size is a bug in vaegen_utils.data.
assert all(claim.holds for claim in claims), "a data set sanity claim fails; see the list above"

# %% [markdown]
# ## What this shows
#
# The available data sets load offline with the canonical split sizes and pixel values on the
# k/255 grid (0/1 for binarized MNIST), which is what the likelihoods in `vaegen_utils` assume.
# CIFAR-10 has no offline source: the line above says how to fetch it once, after which it is
# cached under `data/` and appears here too.
