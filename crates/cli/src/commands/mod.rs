pub mod bench;
pub mod data;
pub mod export;
pub mod generate;
pub mod info;
pub mod plot;
pub mod score;
pub mod train;
