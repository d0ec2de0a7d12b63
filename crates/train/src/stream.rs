//! The training data stream: examples drawn by the mixture sampler, tokenised, packed into rows.
//! Its whole position is a [`StreamState`], saved in every checkpoint, so a resumed run sees
//! exactly the rows the interrupted one would have.

use rosetta_data::monolingual::read_documents;
use rosetta_data::{
    BadLines, Document, Example, InstructionRecord, MixtureSampler, MixtureSpec, PackedRow, Packer, PackerState, SamplerState,
};
use rosetta_model::TextTokenizer;

use crate::config::{DataSection, Objective};
use crate::error::{Result, TrainError};
use crate::sft::chat_example;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StreamState {
    pub sampler: SamplerState,
    pub packer: PackerState,
}

enum Items {
    Documents(Vec<Document>),
    Instructions(Vec<InstructionRecord>),
}

pub struct TrainingStream {
    items: Items,
    sampler: MixtureSampler,
    packer: Packer,
    tokenizer: TextTokenizer,
    document_start: Option<u32>,
}

impl TrainingStream {
    pub fn new(data: &DataSection, tokenizer: TextTokenizer, seed: u64) -> Result<Self> {
        let bad_lines = if data.skip_bad_lines { BadLines::Skip } else { BadLines::Fail };
        let items = match data.objective {
            Objective::CausalLm => {
                let mut docs = Vec::new();
                for path in &data.train {
                    let (mut more, skipped) = read_documents(path, data.lang.as_deref(), bad_lines)?;
                    if skipped.skipped > 0 {
                        eprintln!("skipped {} bad lines of {}", skipped.skipped, path.display());
                    }
                    docs.append(&mut more);
                }
                Items::Documents(docs)
            }
            Objective::Sft => {
                let mut records = Vec::new();
                for path in &data.train {
                    let (mut more, skipped) = rosetta_data::instruction::read_instructions(path, data.lang.as_deref(), bad_lines)?;
                    if skipped.skipped > 0 {
                        eprintln!("skipped {} bad lines of {}", skipped.skipped, path.display());
                    }
                    records.append(&mut more);
                }
                Items::Instructions(records)
            }
        };
        let sampler = match (&items, &data.mix) {
            (Items::Documents(docs), Some(mix)) => MixtureSampler::new(mix.parse::<MixtureSpec>()?, docs, seed)?,
            (Items::Documents(docs), None) => MixtureSampler::new(MixtureSpec::proportional(docs)?, docs, seed)?,
            (Items::Instructions(records), _) => MixtureSampler::new(MixtureSpec::proportional(records)?, records, seed)?,
        };
        let document_start = tokenizer.document_start_id();
        if matches!(items, Items::Documents(_)) && document_start.is_none() {
            return Err(TrainError::Invalid("the tokenizer has no BOS, EOS or end-of-text token to separate documents".into()));
        }
        Ok(TrainingStream { items, sampler, packer: Packer::new(data.seq_len), tokenizer, document_start })
    }

    pub fn mixture(&self) -> &MixtureSpec {
        self.sampler.spec()
    }

    /// Number of documents or records available.
    pub fn len(&self) -> usize {
        match &self.items {
            Items::Documents(d) => d.len(),
            Items::Instructions(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn state(&self) -> StreamState {
        StreamState { sampler: self.sampler.state().clone(), packer: self.packer.state.clone() }
    }

    pub fn restore(&mut self, state: StreamState) -> Result<()> {
        self.sampler.restore(state.sampler)?;
        self.packer.restore(state.packer, self.tokenizer.vocab_size().max(self.tokenizer.id_bound()))?;
        Ok(())
    }

    fn next_example(&mut self) -> Result<Example> {
        let (_, index) = self.sampler.next_document();
        match &self.items {
            Items::Documents(docs) => {
                let mut ids = Vec::with_capacity(64);
                ids.extend(self.document_start);
                ids.extend(self.tokenizer.encode(&docs[index].text, false)?);
                Ok(Example::document(ids).with_lang(&docs[index].lang))
            }
            Items::Instructions(records) => {
                let r = &records[index];
                Ok(chat_example(&self.tokenizer, &r.instruction, &r.response)?.with_lang(&r.lang))
            }
        }
    }

    /// The next `rows` packed rows.
    pub fn next_rows(&mut self, rows: usize) -> Result<Vec<PackedRow>> {
        let mut out = Vec::with_capacity(rows);
        for _ in 0..rows {
            let mut failure = None;
            let mut packer = std::mem::replace(&mut self.packer, Packer::new(0));
            let row = packer.next_row(|| match self.next_example() {
                Ok(e) => Some(e),
                Err(e) => {
                    failure = Some(e);
                    None
                }
            });
            self.packer = packer;
            if let Some(e) = failure {
                return Err(e);
            }
            out.push(row?);
        }
        Ok(out)
    }
}
