pub mod bench;
pub mod export;
pub mod generate;
pub mod info;
pub mod score;
