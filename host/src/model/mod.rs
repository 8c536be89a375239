//! Networks and their weights: the pretrained backbone, the legacy PyTorch checkpoint reader that
//! imports its weights, and (with libtorch) the networks themselves.

#[cfg(feature = "train")]
pub mod backbone;
#[cfg(feature = "train")]
pub mod effnet;
#[cfg(feature = "train")]
pub mod imagenet;
pub mod pickle;
pub mod pth;
