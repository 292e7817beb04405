## MultiPlug's ``exportpy_consts`` module, for plugins written for MultiPlug
## (``import multiplug_nim/exportpy_consts``): the macros are our nimpy's.

import ../nimpy
export nimpy.exportpy_consts, nimpy.exportpy_consts_wpfx, nimpy.PY_CONST_PFX
