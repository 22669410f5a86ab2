pub mod data;
pub mod verify;
