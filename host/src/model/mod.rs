//! Networks and their weights: the pretrained backbone, the legacy PyTorch checkpoint reader that
//! imports its weights, and (with libtorch) the networks themselves.

pub mod backbone;
pub mod effnet;
pub mod imagenet;
pub mod pickle;
pub mod pth;
