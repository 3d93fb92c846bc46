//! A batch of frames: a vector whose capacity is fixed at creation, so pushing never
//! allocates on the packet path.

/// Up to `capacity` buffers, owned by the backend between bursts.
#[derive(Debug)]
pub struct Batch<B> {
    bufs: Vec<B>,
    cap: usize,
}

impl<B> Batch<B> {
    pub fn with_capacity(cap: usize) -> Batch<B> {
        Batch { bufs: Vec::with_capacity(cap), cap }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.bufs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.bufs.len() >= self.cap
    }

    /// Adds a buffer; gives it back if the batch is full.
    pub fn push(&mut self, b: B) -> Result<(), B> {
        if self.is_full() {
            return Err(b);
        }
        self.bufs.push(b);
        Ok(())
    }

    pub fn as_mut_slice(&mut self) -> &mut [B] {
        &mut self.bufs
    }

    pub fn as_slice(&self) -> &[B] {
        &self.bufs
    }

    /// Empties the batch, handing each buffer to `f`.
    pub fn drain_into(&mut self, mut f: impl FnMut(usize, B)) {
        for (i, b) in self.bufs.drain(..).enumerate() {
            f(i, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_capacity() {
        let mut b = Batch::with_capacity(2);
        assert!(b.push(1).is_ok());
        assert!(b.push(2).is_ok());
        assert_eq!(b.push(3), Err(3));
        let mut seen = vec![];
        b.drain_into(|i, x| seen.push((i, x)));
        assert_eq!(seen, vec![(0, 1), (1, 2)]);
        assert!(b.is_empty());
    }
}
