//! DHCNN training: the loss, the training loop and its schedule.

pub mod loss;
