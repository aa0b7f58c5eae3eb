"""Analog front end of the simulated meter: line quantities -> ADC input volts.

    from boards.sim.frontend import FrontEnd
    fe = FrontEnd()
    fe.v_norm(230.0)        # 230 V line as a fraction of the ADC full-scale sine
    fe.i_norm(10.0, 200)    # 10 A line through an external 200:5 CT

The meter (KSEM class) has, per phase:
- voltage: a resistive divider 1 MOhm : 1 kOhm, so the ADC sees V_line / 1001;
- current: an internal 2500:1 current transformer into a 10 Ohm burden, so the
  ADC sees I_meter * 10 / 2500 = I_meter / 250 (88.39 A rms -> 0.5 V peak);
  direct connection is rated up to 63 A;
- optionally an external CT of the installation (N:5), dividing the line current
  by N/5 before the meter's own input.
The ADC full scale is +-0.5 V peak at PGA gain 1 (ADE7880 datasheet, analog
inputs), i.e. 0.5/sqrt(2) V rms for a sine. Every ratio the chip model needs is
"fraction of that full-scale sine rms".
"""
import math

ADC_FS_PEAK = 0.5  # V, PGA = 1
ADC_FS_RMS = ADC_FS_PEAK / math.sqrt(2.0)
EXT_CT_SECONDARY_A = 5.0


class FrontEnd:
    def __init__(self, r_top=1.0e6, r_bottom=1.0e3, ct_turns=2500.0, burden_ohm=10.0,
                 direct_max_a=63.0):
        if r_top < 0 or r_bottom <= 0 or ct_turns <= 0 or burden_ohm <= 0:
            raise ValueError("front end: resistances, turns and burden must be positive")
        self.r_top = r_top
        self.r_bottom = r_bottom
        self.ct_turns = ct_turns
        self.burden_ohm = burden_ohm
        self.direct_max_a = direct_max_a

    def v_adc(self, v_line):
        """ADC input rms volts for a line voltage (rms volts)."""
        return v_line * self.r_bottom / (self.r_top + self.r_bottom)

    def i_adc(self, i_line, ct_primary_a=None):
        """ADC input rms volts for a line current, through the optional N:5 CT."""
        i = i_line
        if ct_primary_a:
            i = i * EXT_CT_SECONDARY_A / ct_primary_a
        return i / self.ct_turns * self.burden_ohm

    def v_norm(self, v_line):
        return self.v_adc(v_line) / ADC_FS_RMS

    def i_norm(self, i_line, ct_primary_a=None):
        return self.i_adc(i_line, ct_primary_a) / ADC_FS_RMS

    def v_full_scale_rms(self):
        """Line voltage (rms) that drives the ADC to full scale: ~353.9 V."""
        return ADC_FS_RMS * (self.r_top + self.r_bottom) / self.r_bottom

    def i_full_scale_rms(self, ct_primary_a=None):
        """Line current (rms) that drives the ADC to full scale: ~88.39 A direct."""
        i = ADC_FS_RMS / self.burden_ohm * self.ct_turns
        if ct_primary_a:
            i = i * ct_primary_a / EXT_CT_SECONDARY_A
        return i
