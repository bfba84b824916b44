package rank

// EWMA is an exponentially weighted moving average of a node's transfer
// rate. The zero value is ready to use with DefaultAlpha and has no value
// yet. It is not safe for concurrent use.
type EWMA struct {
	// Alpha is the weight of each new sample in (0, 1]; 0 means DefaultAlpha.
	Alpha float64
	value float64
	set   bool
}

// Add folds in one sample. The first sample is taken as is, so a new node's
// rate is not dragged towards zero by an invented starting value.
func (e *EWMA) Add(sample float64) {
	if !e.set {
		e.value, e.set = sample, true
		return
	}
	a := e.Alpha
	if a <= 0 || a > 1 {
		a = DefaultAlpha
	}
	e.value += a * (sample - e.value)
}

// Value returns the average, 0 before the first sample.
func (e *EWMA) Value() float64 { return e.value }
