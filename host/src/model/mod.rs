//! Networks and their weights: the pretrained backbone, the legacy PyTorch checkpoint reader that
//! imports its weights, the networks themselves, and `orbhash weights` ([`cli`]).

pub mod backbone;
pub mod cli;
pub mod effnet;
pub mod imagenet;
pub mod pickle;
pub mod pth;
